"""PID 1 of the VM: mounts, modules, the console contract, services, power-off."""
