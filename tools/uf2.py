"""UF2 files: a flat image cut into 512-byte blocks that a bootloader's
USB mass-storage drive accepts as a file copied onto it.

Written from the format's description (microsoft/uf2 README; the block
layout and checks of adafruit/Adafruit_nRF52_Bootloader src/usb/uf2/uf2.h
and ghostfat.c): every block is 32 bytes of header, 476 bytes of data and
a 4-byte end magic, all little-endian:

  0  magic start 0 (0x0A324655, "UF2\\n")   16  payload size (256 here)
  4  magic start 1 (0x9E5D5157)            20  block number (0-based)
  8  flags (0x2000: family ID present)     24  number of blocks in the file
  12 target flash address                  28  family ID (0xADA52840: nRF52840)
  32 payload, zero-padded to 476 bytes     508 magic end (0x0AB16F30)

The Adafruit nRF52 bootloader takes only blocks with the family flag,
256-byte payloads and 256-byte-aligned addresses.
"""

import dataclasses
import struct

BLOCK_BYTES = 512
DATA_BYTES = 476
PAYLOAD_BYTES = 256
MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_NOT_MAIN_FLASH = 0x00000001
FLAG_FAMILY_ID_PRESENT = 0x00002000
NRF52840_FAMILY_ID = 0xADA52840
# Unused bytes of a last, short payload: erased flash reads 0xFF, so
# writing 0xFF there programs nothing.
PAD_BYTE = 0xFF

_HEADER = struct.Struct("<8I")
_END = struct.Struct("<I")


class Uf2Error(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Block:
    flags: int
    address: int
    payload: bytes
    number: int
    total: int
    family_id: int


def from_bin(image, base_address, family_id=NRF52840_FAMILY_ID):
    """The UF2 file (bytes) that writes `image` to flash from base_address."""
    if not image:
        raise Uf2Error("the image is empty: nothing to write")
    if base_address % PAYLOAD_BYTES:
        raise Uf2Error(
            f"base address {base_address:#x} is not a multiple of "
            f"{PAYLOAD_BYTES}, which UF2 bootloaders require"
        )
    if base_address < 0 or base_address + len(image) > 1 << 32:
        raise Uf2Error(f"the image does not fit the 32-bit address space from {base_address:#x}")
    total = (len(image) + PAYLOAD_BYTES - 1) // PAYLOAD_BYTES
    blocks = []
    for number in range(total):
        payload = image[number * PAYLOAD_BYTES : (number + 1) * PAYLOAD_BYTES]
        payload = payload.ljust(PAYLOAD_BYTES, bytes([PAD_BYTE]))
        header = _HEADER.pack(
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID_PRESENT,
            base_address + number * PAYLOAD_BYTES,
            PAYLOAD_BYTES,
            number,
            total,
            family_id,
        )
        blocks.append(header + payload.ljust(DATA_BYTES, b"\0") + _END.pack(MAGIC_END))
    return b"".join(blocks)


def write(bin_path, uf2_path, base_address, family_id=NRF52840_FAMILY_ID):
    """Writes uf2_path from the flat image at bin_path; returns its size."""
    data = from_bin(bin_path.read_bytes(), base_address, family_id)
    uf2_path.write_bytes(data)
    return len(data)


def read_blocks(data):
    """Every block of a UF2 file, each checked on its own: size, magic
    numbers, payload size. Raises Uf2Error naming the first bad block."""
    if not data or len(data) % BLOCK_BYTES:
        raise Uf2Error(
            f"a UF2 file is whole {BLOCK_BYTES}-byte blocks; this one has {len(data)} bytes"
        )
    blocks = []
    for index in range(len(data) // BLOCK_BYTES):
        raw = data[index * BLOCK_BYTES : (index + 1) * BLOCK_BYTES]
        (start0, start1, flags, address, size, number, total, family) = _HEADER.unpack_from(raw)
        (end,) = _END.unpack_from(raw, BLOCK_BYTES - _END.size)
        if (start0, start1, end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise Uf2Error(
                f"block {index}: wrong magic numbers "
                f"({start0:#010x} {start1:#010x} ... {end:#010x})"
            )
        if not 0 < size <= DATA_BYTES:
            raise Uf2Error(f"block {index}: payload size {size} is outside 1..{DATA_BYTES}")
        payload = raw[_HEADER.size : _HEADER.size + size]
        blocks.append(Block(flags, address, payload, number, total, family))
    return blocks


def validate(data, base_address, family_id=NRF52840_FAMILY_ID):
    """The flat image a UF2 file writes, after checking it is what a
    nRF52840 UF2 bootloader takes for one contiguous image from
    base_address: the family flag and ID on every block, 256-byte payloads
    at contiguous addresses, block numbers 0..N-1 and the count N on each."""
    blocks = read_blocks(data)
    image = bytearray()
    for index, block in enumerate(blocks):
        where = f"block {index}"
        if not block.flags & FLAG_FAMILY_ID_PRESENT or block.flags & FLAG_NOT_MAIN_FLASH:
            raise Uf2Error(
                f"{where}: flags {block.flags:#x} lack the family-ID flag "
                f"({FLAG_FAMILY_ID_PRESENT:#x}) or mark it not for flash"
            )
        if block.family_id != family_id:
            raise Uf2Error(
                f"{where}: family ID {block.family_id:#010x}, expected {family_id:#010x}"
            )
        if len(block.payload) != PAYLOAD_BYTES:
            raise Uf2Error(
                f"{where}: payload of {len(block.payload)} bytes, the "
                f"bootloader takes only {PAYLOAD_BYTES}"
            )
        expected = base_address + index * PAYLOAD_BYTES
        if block.address != expected:
            raise Uf2Error(
                f"{where}: target address {block.address:#x}, expected "
                f"{expected:#x} (contiguous from {base_address:#x})"
            )
        if (block.number, block.total) != (index, len(blocks)):
            raise Uf2Error(
                f"{where}: numbered {block.number} of {block.total}, expected "
                f"{index} of {len(blocks)}"
            )
        image += block.payload
    return bytes(image)
