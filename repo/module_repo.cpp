// Module repo: see docs/ARCHITECTURE.md
