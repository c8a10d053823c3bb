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
