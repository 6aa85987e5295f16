"""Flash and RAM use of a firmware ELF, from its section headers.

Counted like arduino-cli's size report: program storage is every section
stored in flash, including the initial values of .data; dynamic memory is
.data + .bss. The stack reservation (.stack) is RAM but not a variable, so
it is reported on its own.
"""

import dataclasses
import struct

SHT_NOBITS = 8
SHF_ALLOC = 0x2


@dataclasses.dataclass(frozen=True)
class Section:
    name: str
    address: int
    size: int
    stored: bool  # has bytes in the file (PROGBITS), as opposed to NOBITS


@dataclasses.dataclass(frozen=True)
class Usage:
    flash_bytes: int
    ram_bytes: int  # globals: .data + .bss
    stack_bytes: int


def read_sections(elf_bytes):
    """Allocated sections of a 32-bit little-endian ELF."""
    if elf_bytes[:4] != b"\x7fELF" or elf_bytes[4] != 1 or elf_bytes[5] != 1:
        raise ValueError("not a 32-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<I", elf_bytes, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf_bytes, 0x2E)
    headers = [
        struct.unpack_from("<IIIIIIIIII", elf_bytes, shoff + i * shentsize) for i in range(shnum)
    ]
    names_offset = headers[shstrndx][4]

    def name(offset):
        start = names_offset + offset
        return elf_bytes[start : elf_bytes.index(b"\0", start)].decode()

    return [
        Section(name(h[0]), h[3], h[5], h[1] != SHT_NOBITS)
        for h in headers
        if h[2] & SHF_ALLOC and h[5] > 0
    ]


def usage(elf_bytes, flash, ram, stack_section=".stack"):
    """flash/ram: board_config.Region. Sections are assigned by address."""
    flash_bytes = ram_bytes = stack_bytes = 0
    for section in read_sections(elf_bytes):
        if section.name == stack_section:
            stack_bytes += section.size
        elif ram.contains(section.address):
            ram_bytes += section.size
            if section.stored:  # .data: its initial values are stored in flash
                flash_bytes += section.size
        elif flash.contains(section.address):
            flash_bytes += section.size
        else:
            raise ValueError(
                f"section {section.name} at {section.address:#x} is in neither flash nor RAM"
            )
    return Usage(flash_bytes, ram_bytes, stack_bytes)
