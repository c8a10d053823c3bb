"""`edugap map`: the image exists in each format, has the legend, and shows every class in its
colour in the proportions of the schools."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edugap.collector.cli import main
from edugap.collector.export.mapimage import COLOURS, MapSpec, render_svg, write_image
from edugap.collector.model import SchoolStatus
from edugap.collector.registry.outlines import country_outline
from edugap.collector.store import open_store
from tests import realparts
from tests.collector import reports
from tests.collector.sample import school

# how many schools of each class the map shows, all reporting
CLASS_COUNTS = {"good": 48, "moderate": 24, "bad": 12, "unknown": 6}


def grid() -> list[SchoolStatus]:
    """Schools on a grid inside Vietnam far enough apart that no two dots touch."""
    out = []
    i = 0
    for klass, n in CLASS_COUNTS.items():
        for _ in range(n):
            lat, lon = 11.0 + (i // 10) * 1.2, 104.2 + (i % 10) * 0.45
            found = school(f"S{i:03d}", "Cao Bằng", connectivity=klass)
            out.append(replace(found, lat=lat, lon=lon))
            i += 1
    return out


def pillow() -> object:
    try:
        from PIL import Image
    except ImportError:
        realparts.missing("pillow", "installed with cairosvg (pip install 'edugap[collector]')")
        raise
    return Image


def png(svg: str, tmp_path: Path) -> Path:
    path = tmp_path / "map.png"
    try:
        write_image(svg, path)
    except ValueError as e:  # MapImageError: no cairo
        realparts.missing("cairo", f"apt-get install libcairo2: {e}")
    return path


def colour_pixels(path: Path, box: tuple[int, int, int, int]) -> Counter[str]:
    image = pillow().open(path).convert("RGB").crop(box)  # type: ignore[attr-defined]
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): k for k, c in COLOURS.items()}
    data = image.tobytes()
    pixels = (tuple(data[i : i + 3]) for i in range(0, len(data), 3))
    return Counter(wanted[p] for p in pixels if p in wanted)


SPEC = MapSpec("", datetime(2026, 3, 2, 16, 0), "vi")


def test_png_shows_every_class_in_proportion_and_the_legend(tmp_path: Path) -> None:
    svg = render_svg(grid(), SPEC, country_outline())
    path = png(svg, tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_map = colour_pixels(path, (24, 110, 664, 1090))
    total_px, total_n = sum(on_map.values()), sum(CLASS_COUNTS.values())
    for klass, n in CLASS_COUNTS.items():
        share = on_map[klass] / total_px
        assert share == pytest.approx(n / total_n, rel=0.1), (klass, on_map)
    legend = colour_pixels(path, (680, 110, 1000, 400))
    assert all(legend[k] >= 22 * 22 * 0.9 for k in COLOURS), legend  # one swatch per class
    for text in ("Tốt", "48 (53.3 %)", "Trung bình", "24 (26.7 %)", "Kém", "Chưa rõ",
                 "Kết nối Internet của các trường: Cả nước", "02/03/2026 16:00", "Natural Earth"):
        assert text in svg, text  # fmt: skip


def test_a_school_that_does_not_report_is_a_ring(tmp_path: Path) -> None:
    schools = [replace(s, monitoring="drop_off") for s in grid()[:10]]
    svg = render_svg(schools, SPEC, None)
    on_map = colour_pixels(png(svg, tmp_path), (24, 110, 664, 1090))
    filled = colour_pixels(png(render_svg(grid()[:10], SPEC, None), tmp_path),
                           (24, 110, 664, 1090))  # fmt: skip
    assert 0 < on_map["good"] < filled["good"] * 0.8


def test_names_in_the_title_are_escaped() -> None:
    svg = render_svg([], replace(SPEC, title='<b>"x" & y</b>'), None)
    assert "&lt;b&gt;\"x\" &amp; y&lt;/b&gt;" in svg


REGISTRY = (
    "school_id,name,province,commune,level,lat,lon,students\n"
    "CB-1,Trường A,Cao Bằng,Xã Bảo Lâm,primary,22.85,105.45,100\n"
    "CB-2,Trường B,Cao Bằng,Xã Bảo Lâm,primary,22.95,106.20,100\n"
    "CB-3,Trường C,Cao Bằng,Xã Bảo Lâm,primary,22.50,106.00,100\n"
    "HN-1,Trường D,Hà Nội,Phường Ba Đình,primary,21.03,105.83,100\n"
)


@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_edugap_map_draws_the_store_in_each_format(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "map.db")
    src = tmp_path / "schools.csv"
    src.write_text(REGISTRY, encoding="utf-8")
    assert main(["schools", "import", str(src), "--db", db]) == 0
    now = datetime.now(UTC)
    store = open_store(db)
    try:  # CB-1 good, CB-2 moderate, CB-3 bad, HN-1 unknown (no test)
        store.save_batch([reports.received(reports.bandwidth(s, at=now, down=d))
                          for s, d in (("CB-1", 80.0), ("CB-2", 5.0), ("CB-3", 0.3))])  # fmt: skip
    finally:
        store.close()
    out = tmp_path / f"cao-bang.{fmt}"
    code = main(["map", "--db", db, "--province", "tinh cao bang", "--lang", "en", "-o", str(out)])
    if code != 0 and fmt != "svg" and "cairo" in capsys.readouterr().err:
        realparts.missing("cairo", "apt-get install libcairo2")
    assert code == 0
    err = capsys.readouterr().err
    assert "wrote the map of 3 schools (good 1, moderate 1, bad 1, unknown 0)" in err
    data = out.read_bytes()
    magic = {"svg": b"<svg", "png": b"\x89PNG", "pdf": b"%PDF-"}[fmt]
    assert data.startswith(magic) and len(data) > 2000
    if fmt == "svg":
        text = data.decode()
        assert "Internet connectivity of schools: Cao Bằng" in text
        assert "Good (meets the requirement)" in text and "1 (33.3 %)" in text
    if fmt == "png":
        image = pillow().open(io.BytesIO(data))  # type: ignore[attr-defined]
        assert image.size == (1000, 1120)


def test_edugap_map_refuses_an_unknown_extension(tmp_path: Path) -> None:
    assert main(["map", "--db", str(tmp_path / "none.db"), "-o", str(tmp_path / "x.gif")]) == 2
