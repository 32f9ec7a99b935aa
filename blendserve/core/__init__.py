"""The engine: pure scheduling modules plus the I/O edge (runtimes, dispatcher, intake, finalize)."""
