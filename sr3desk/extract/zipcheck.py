"""Zip containers (DOCX, PPTX, ODT, EPUB) are checked before any parser sees them.

The parsers inflate whatever the archive holds, so a small file that expands to
gigabytes (a zip bomb) would exhaust memory. The central directory's declared sizes
are summed first, which refuses the classic and the overlapping-entry bombs at no
cost; then every entry is inflated once, in bounded pieces, counting real bytes and
checking each CRC, so that a lying directory is caught too.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from sr3desk.extract.base import Unreadable
from sr3desk.extract.types import Limits, human_bytes

_PIECE = 1024 * 1024


def check_zip(data: bytes, limits: Limits, what: str) -> list[str]:
    """Validate the zip in ``data`` for format ``what`` ("DOCX", ...); returns entry names.

    Raises :class:`Unreadable`: "zip bomb: 4 GB uncompressed", "zip bomb: 70000 entries",
    "corrupt DOCX: not a zip file", "corrupt DOCX: Bad CRC-32 for file ...".
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as err:
        raise Unreadable(f"corrupt {what}: {err}") from err
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_members:
            raise Unreadable(f"zip bomb: {len(infos)} entries")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_unzipped_bytes:
            raise Unreadable(f"zip bomb: {human_bytes(declared)} uncompressed")
        actual = 0
        for info in infos:
            if info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    while piece := member.read(_PIECE):
                        actual += len(piece)
                        if actual > limits.max_unzipped_bytes:
                            raise Unreadable(f"zip bomb: over {human_bytes(actual)} uncompressed")
            except Unreadable:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
                raise Unreadable(f"corrupt {what}: {err}") from err
            except NotImplementedError as err:  # a compression method zipfile lacks
                raise Unreadable(f"unsupported {what}: {err}") from err
            except RuntimeError as err:  # zipfile's "encrypted, password required"
                raise Unreadable(f"encrypted {what}") from err
        return [info.filename for info in infos]
