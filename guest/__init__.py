"""Code that runs inside the VM (and on the host in unit tests).

Keep imports here empty: the guest starts under TCG emulation, where every imported module
costs boot time.
"""
