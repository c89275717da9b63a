"""VM-test fixtures shared with the end-to-end test: the VM lock and the locally built image
registered in the test's own image cache."""

from tests.e2e.test_machine_e2e import registered_image, vm_lock

__all__ = ["registered_image", "vm_lock"]
