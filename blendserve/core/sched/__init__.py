"""The scheduler: pure BlendServe (no I/O, no clock, stdlib only). It may run compiled: blendserve/native.py."""
