"""A statefsd served from a thread on a file-backed device, for protocol-level host tests."""

import threading

from guest.statefs import FileBlockDevice
from guest.statefsd.client import StatefsClient
from guest.statefsd.server import StatefsServer


class ServerThread:
    def __init__(self, image, socket_path):
        self.image = image
        self.socket_path = str(socket_path)
        self.server = StatefsServer(lambda: FileBlockDevice(self.image), self.socket_path)
        self.formatted = self.server.open_store()
        self.server.listen()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **kwargs) -> StatefsClient:
        return StatefsClient.connect(self.socket_path, **kwargs)

    def stop(self):
        self.server.request_stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
