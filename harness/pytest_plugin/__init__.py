"""pytest plugin: boot statefs-qemu VMs from tests (registered through the ``pytest11`` entry
point as ``harness.pytest_plugin``).

Split like the good plugins: :mod:`.options` (the ``--qemu-*`` flags, their ini twins and how
they resolve), :mod:`.hooks` (the ``qemu`` marker, the report header, console excerpts and
artifact paths on failing reports) and :mod:`.fixtures` (image, disk, VM factory).

Fixtures: ``qemu_settings``, ``qemu_contract``, ``guest_image``, ``disk_factory``, ``vm_disk``,
``vm_factory``, ``vm``. Marker: ``@pytest.mark.qemu(disk_size_mib=64, kernel_args=(...))`` on
every test that boots a VM (``-m "not qemu"`` deselects them). See docs/testing/markers.md.
"""

from harness.pytest_plugin.fixtures import (
    disk_factory,
    guest_image,
    qemu_contract,
    qemu_settings,
    vm,
    vm_disk,
    vm_factory,
)
from harness.pytest_plugin.hooks import (
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
    pytest_runtest_makereport,
)
from harness.pytest_plugin.options import QemuSettings, pytest_addoption

__all__ = [
    "QemuSettings",
    "disk_factory",
    "guest_image",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "qemu_contract",
    "qemu_settings",
    "vm",
    "vm_disk",
    "vm_factory",
]
