// Module cbt: see docs/ARCHITECTURE.md
