"""keystored: the device identity key, kept under ``/state/keystore/``."""
