"""Place names as people type them resolve to the official 2025 provinces and communes."""

from __future__ import annotations

import pytest

from edugap.collector.registry.places import default_places, fold, key


def test_the_2025_structure_is_loaded() -> None:
    places = default_places()
    assert len(places.provinces) == 34
    assert 3200 <= places.commune_count <= 3400  # "about 3,300 communes"


@pytest.mark.parametrize(
    ("typed", "official"),
    [
        ("Thành phố Hà Nội", "Thành phố Hà Nội"),
        ("Hà Nội", "Thành phố Hà Nội"),
        ("ha noi", "Thành phố Hà Nội"),
        ("  HA   NOI ", "Thành phố Hà Nội"),
        ("TP. Hồ Chí Minh", "Thành phố Hồ Chí Minh"),
        ("TP.HCM", "Thành phố Hồ Chí Minh"),
        ("Dak Lak", "Đắk Lắk"),
        ("Tỉnh Đắk Lắk", "Đắk Lắk"),
        ("Thanh Hoá", "Thanh Hóa"),  # old-style tone placement
        ("hue", "Thành phố Huế"),
        ("ha_noi", "Thành phố Hà Nội"),  # the package's codename
    ],
)
def test_province_lookup_ignores_case_accents_and_prefix(typed: str, official: str) -> None:
    found = default_places().province(typed)
    assert found is not None and found.name == official


def test_unknown_and_merged_away_provinces_are_not_found() -> None:
    places = default_places()
    assert places.province("Atlantis") is None
    # Hà Giang merged into Tuyên Quang in 2025: it is no province any more
    assert places.province("Hà Giang") is None


def test_commune_lookup() -> None:
    places = default_places()
    found = places.commune("ha noi", "ba dinh")
    assert found is not None and found.name == "Phường Ba Đình"
    found = places.commune("Hà Nội", "Phường Ba Đình")
    assert found is not None and found.code == 4
    assert places.commune("Hà Nội", "Nowhere") is None
    assert places.commune("Atlantis", "Ba Đình") is None


def test_communes_that_differ_only_by_accents() -> None:
    # Thái Nguyên has both Xã Văn Lăng and Xã Văn Lang: accents decide, without them it is
    # ambiguous and nothing is guessed
    places = default_places()
    lang = places.commune("Thái Nguyên", "Văn Lăng")
    lang2 = places.commune("Thái Nguyên", "Xã Văn Lang")
    assert lang is not None and lang.name == "Xã Văn Lăng"
    assert lang2 is not None and lang2.name == "Xã Văn Lang"
    assert places.commune("Thái Nguyên", "van lang") is None


def test_fold_and_key() -> None:
    assert fold("Đắk  Lắk") == "dak lak"
    assert key("Thành phố Hồ Chí Minh") == "ho chi minh"
    assert key("Phường Ba Đình") == key("ba dinh")


# --- Vietnamese collation, the 2025 merger, suggestions ---------------------------------------


def test_collation_is_the_vietnamese_order_of_the_coverage_page() -> None:
    """Python's key and Node's ICU Intl.Collator("vi") (what the page sorts with) agree."""
    import json
    import shutil
    import subprocess

    from edugap.collector.registry.places import collation_key
    from tests import realparts

    node = shutil.which("node")
    if node is None:
        realparts.missing("node", "install Node.js 20 (Debian 'nodejs')")
    places = default_places()
    names = [p.name for p in places.provinces]
    names += [c.name for p in places.provinces[:8] for c in p.communes]
    names += ["Hoa", "Hòa", "Hoà", "Hóa", "ba", "Ba", "bà", "a b", "a-b", "a1", "ab"]
    script = (
        "const n = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(n.sort(new Intl.Collator('vi').compare)))"
    )
    icu = json.loads(subprocess.run([node, "-e", script, json.dumps(names)], check=True,
                                    capture_output=True, text=True).stdout)  # fmt: skip
    assert sorted(names, key=collation_key) == icu
    # Đ after D and before E; the vowels with marks after their base letter
    provinces = sorted(["Vĩnh Long", "Đồng Nai", "Đắk Lắk", "Điện Biên", "An Giang", "Cà Mau"],
                       key=collation_key)  # fmt: skip
    assert provinces == ["An Giang", "Cà Mau", "Đắk Lắk", "Điện Biên", "Đồng Nai", "Vĩnh Long"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Hà Giang", "Tuyên Quang"),
        ("Tỉnh Hà Giang", "Tuyên Quang"),
        ("ha giang", "Tuyên Quang"),
        ("Bà Rịa – Vũng Tàu", "Thành phố Hồ Chí Minh"),
        ("Ba Ria-Vung Tau", "Thành phố Hồ Chí Minh"),
        ("Hoà Bình", "Phú Thọ"),
        ("Quảng Nam", "Thành phố Đà Nẵng"),
        ("Thừa Thiên Huế", "Thành phố Huế"),
    ],
)
def test_provinces_of_before_2025_have_their_successor(before: str, after: str) -> None:
    places = default_places()
    assert places.province(before) is None
    succession = places.succession(before)
    assert succession is not None and succession.province.name == after
    assert "Resolution" in succession.note and after in succession.note


def test_every_merged_province_is_in_the_table() -> None:
    """63 provinces before the merger, 34 after: 29 names went, and Thừa Thiên Huế was renamed."""
    from edugap.collector.registry.places import SUCCESSORS_FILE

    lines = [
        line
        for line in SUCCESSORS_FILE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert len(lines) - 1 == 29 + 1
    assert default_places().succession("Hà Nội") is None


def test_suggestions_for_a_misspelt_province() -> None:
    places = default_places()
    assert places.suggest_province("Ha Giangg")[0] == "Hà Giang (now Tuyên Quang)"
    assert places.suggest_province("Dak Lac") == ["Đắk Lắk"]
    assert places.suggest_province("Atlantis") == []
