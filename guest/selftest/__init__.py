"""The selftest client: prints the marker contract, each marker only after its proof."""
