"""updated: A/B boot control (``bootctl``), kept under ``/state/boot/``."""
