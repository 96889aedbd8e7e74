"""Write nfse_core/domain/data/lc116.csv from the NFS-e Nacional national service list (Anexo B).

Usage:
    python scripts/lc116_data.py                      # read the workbook from the local mirror
    python scripts/lc116_data.py path/to/ANEXO_B.xlsx

The workbook's sheet LISTA.SERV.NAC. has one row per item (subitem 0), per LC 116 subitem
(desdobro 0, with the law's text of the subitem) and per national code (cTribNac = item,
subitem and desdobro, two digits each). The output has one row per subitem of the law:
subitem, the law's text, the act that put it in the list, the act that gave its wording, and
its national codes. The workbook is read with the standard library (zip + XML).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

OFFICIAL_URL = (
    "https://www.gov.br/nfse/pt-br/biblioteca/documentacao-tecnica/documentacao-atual/"
    "anexo_b-nbs2-lista_servico_nacional-snnfse-v1-01-20260122.xlsx"
)
MIRROR = Path("/work/.mirror/rafael-negrao+nfse-nacional-service/repo")
MIRROR_REPO = "rafael-negrao/nfse-nacional-service"
MIRROR_PATH = "doc/anexos/ANEXO_B-NBS2-Lista_Servico_Nacional-v1.01.xlsx"
MIRROR_COMMIT = "1c42367a4e5bb5078b972f3f916b8b96d537b454"
MIRROR_BLOB = "a2eab7f0e2fa54a7f22bce0ad29b1b7b751f64d1"
OUTPUT = Path(__file__).resolve().parent.parent / "nfse_core" / "domain" / "data" / "lc116.csv"
SHEET = "xl/worksheets/sheet1.xml"  # LISTA.SERV.NAC.
NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"

# Subitems added after 2003 (LC 157/2016 art. 1 and LC 183/2021 art. 1, Planalto's compiled
# text of LC 116/2003); every other subitem is in the 2003 list.
INCLUDED_BY = {
    **dict.fromkeys(["01.09", "06.06", "14.14", "16.02", "17.25", "25.05"], "LC 157/2016"),
    "11.05": "LC 183/2021",
}
# Subitems of 2003 whose wording LC 157/2016 replaced ("Redação dada pela Lei Complementar
# nº 157, de 2016" in Planalto's compiled text).
REWORDED_BY = dict.fromkeys(
    ["01.03", "01.04", "07.16", "11.02", "13.05", "14.05", "16.01", "25.02"], "LC 157/2016"
)
# Item 99 of the national list ("Serviços sem a incidência de ISSQN e ICMS") is no LC 116 item.
NOT_IN_THE_LAW = "99"


def workbook_bytes(path: Path | None) -> bytes:
    """The workbook: the given file, or the mirror's blob."""
    if path is not None:
        return path.read_bytes()
    out = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        ["git", "-C", str(MIRROR), "show", f"{MIRROR_COMMIT}:{MIRROR_PATH}"],  # noqa: S607
        check=True,
        capture_output=True,
    )
    return out.stdout


def sheet_rows(data: bytes) -> Iterator[dict[str, str]]:
    """Each row of LISTA.SERV.NAC. as {column letter: text}."""
    book = zipfile.ZipFile(io.BytesIO(data))
    strings = [
        "".join(t.text or "" for t in si.iter(f"{NS}t"))
        for si in ET.fromstring(book.read("xl/sharedStrings.xml")).findall(f"{NS}si")  # noqa: S314
    ]
    for row in ET.fromstring(book.read(SHEET)).iter(f"{NS}row"):  # noqa: S314
        cells = {}
        for cell in row.findall(f"{NS}c"):
            match = re.match(r"[A-Z]+", cell.get("r", ""))
            value = cell.find(f"{NS}v")
            text = "" if value is None or value.text is None else value.text
            if cell.get("t") == "s":
                text = strings[int(text)]
            if match:
                cells[match.group()] = " ".join(text.split())
        yield cells


def subitems(data: bytes) -> list[tuple[str, str, list[str]]]:
    """(subitem NN.NN, the law's text, national codes) for every subitem of the law."""
    texts: dict[str, str] = {}
    codes: dict[str, list[str]] = {}
    for cells in sheet_rows(data):
        item, sub, part = cells.get("B", ""), cells.get("C", ""), cells.get("D", "")
        if not (item.isdigit() and sub.isdigit() and part.isdigit()) or sub == "0":
            continue
        key = f"{int(item):02d}.{int(sub):02d}"
        if key.startswith(NOT_IN_THE_LAW + "."):
            continue
        if part == "0":
            texts[key] = cells["E"]
        else:
            code = f"{int(item):02d}{int(sub):02d}{int(part):02d}"
            if cells.get("A", "").zfill(6) != code:
                raise ValueError(f"code column disagrees with item/subitem/desdobro: {cells}")
            codes.setdefault(key, []).append(code)
    if set(texts) != set(codes):
        raise ValueError(f"subitems without codes or text: {set(texts) ^ set(codes)}")
    return [(key, texts[key], sorted(codes[key])) for key in sorted(texts)]


def render(rows: list[tuple[str, str, list[str]]]) -> str:
    """The output file's text: header comments, column names, rows."""
    national = sum(len(c) for _, _, c in rows)
    header = [
        "# The LC 116/2003 list of services in force: one row per subitem of the law.",
        "# Source: Sistema Nacional NFS-e, Anexo B (ANEXO_B-NBS2-LISTA_SERVICO_NACIONAL-SNNFSe),",
        "#   version 1.01 of 2026-01-22, sheet LISTA.SERV.NAC.:",
        f"#   {OFFICIAL_URL}",
        f"#   read from the copy in github.com/{MIRROR_REPO}, {MIRROR_PATH}",
        f"#   at commit {MIRROR_COMMIT} (git blob {MIRROR_BLOB}).",
        "# descricao: the sheet's subitem row (desdobro 0), which reproduces the law's text of the",
        "#   subitem; it differs from Planalto's compiled text of LC 116/2003 only in typography",
        "#   (e.g. a hyphen for Planalto's en dash in 15.05, no final period in 17.14). The",
        "#   law's text is not protected by copyright (Lei 9.610/1998 art. 8º IV).",
        "# incluido_por: the act that put the subitem in the list; redacao_por: the act that gave",
        "#   its current wording (Planalto's compiled text of LC 116/2003).",
        "# codigos_nacionais: the subitem's national codes (cTribNac: item, subitem and national",
        "#   desdobro, two digits each), space-separated. Item 99 of the national list (990101,",
        '#   "Serviços sem a incidência de ISSQN e ICMS") is no LC 116 subitem: left out.',
        f"# Rows: {len(rows)} subitems, {national} national codes.",
        "# Generated by scripts/lc116_data.py; do not edit by hand.",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["subitem", "descricao", "incluido_por", "redacao_por", "codigos_nacionais"])
    for key, text, codes in rows:
        included = INCLUDED_BY.get(key, "LC 116/2003")
        worded = REWORDED_BY.get(key, included)
        writer.writerow([key, text, included, worded, " ".join(codes)])
    return "\n".join(header) + "\n" + buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workbook", nargs="?", type=Path, help="Anexo B .xlsx (default: mirror)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rows = subitems(workbook_bytes(args.workbook))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(rows), encoding="utf-8")
    print(f"wrote {len(rows)} subitems to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
