"""What the VM's Python tools share: block I/O with O_DIRECT-safe buffers,
commands, and the kernel log (storefuzz.py, storecraft.py)."""
import mmap
import os
import subprocess
import sys

BLOCK = 4096


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def read_block(fd, offset):
    """The 4 KiB block at byte offset of fd (O_DIRECT-safe), as a bytearray."""
    buf = mmap.mmap(-1, BLOCK)
    if os.preadv(fd, [buf], offset) != BLOCK:
        sys.exit(f"short read at byte {offset}")
    return bytearray(buf)


def write_block(fd, offset, data):
    buf = mmap.mmap(-1, BLOCK)
    buf.write(bytes(data))
    if os.pwritev(fd, [buf], offset) != BLOCK:
        sys.exit(f"short write at byte {offset}")


class Kmsg:
    """New kernel log messages since the last call, read from /dev/kmsg."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def new(self):
        lines = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return lines
            except BrokenPipeError:  # overwritten records: go on
                continue
            lines.append(rec.split(";", 1)[-1].split("\n", 1)[0])
