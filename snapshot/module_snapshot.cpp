// Module snapshot: see docs/ARCHITECTURE.md
