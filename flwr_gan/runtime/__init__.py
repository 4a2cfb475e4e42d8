"""The runtime shared by every algorithm family.

Records and their validation (:mod:`.records`), traffic and the virtual clock
(:mod:`.telemetry`), checkpoints (:mod:`.checkpoint`), the run directory
(:mod:`.rundir`), the relay for server-mediated protocols (:mod:`.relay`), the
experiment harness (:mod:`.experiment`) and the simulation wrapper
(:mod:`.simulation`).
"""
