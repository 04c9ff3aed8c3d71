// Module kernel: see docs/ARCHITECTURE.md
