// Module config: see docs/ARCHITECTURE.md
