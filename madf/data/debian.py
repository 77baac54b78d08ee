"""Photographs shipped in Debian's wallpaper and game-data packages: found where installed, else fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into a cache (no root, nothing installed system-wide). A file
named ``archive.rcc::inner/path`` lives inside a Qt resource file (GCompris packs its photos so) and is copied out
into the cache.

The file lists are curated by eye from contact sheets of every image in these packages (2026-11-27): photographs
are kept; renders, abstract art, logos and screenshots are not. Licenses are the packages' (debian/copyright).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

from madf.common.atomic import atomic_path
from madf.data.qt_resources import ResourceError, read_rcc

log = logging.getLogger("madf")


@dataclasses.dataclass(frozen=True)
class Source:
    path: Path
    package: str
    license: str


MEMBER = "::"    # separates a Qt resource file from the path of a file inside it


def _gcompris(activity: str, names: str) -> List[str]:
    return [f"usr/share/gcompris-qt/rcc/{activity}.rcc{MEMBER}gcompris/src/activities/{activity}/resource/{n}.webp"
            for n in names.split()]


# package: (license, [files inside the package])
PACKAGES: Dict[str, Tuple[str, List[str]]] = {
    "lomiri-wallpapers-16.04": ("CC-BY-SA-4.0 / CC-BY-4.0 / CC0 (per file)", [
        f"usr/share/backgrounds/{n}.jpg" for n in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
            "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
            "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")]),
    "lomiri-wallpapers-20.04": ("CC-BY-SA-4.0 / CC-BY-4.0 / CC0 (per file)",
                                ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"]),
    "mate-backgrounds": ("GPL-2+", [
        f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
            "TwoWings", "Wood", "YellowFlower")]),
    "plasma-workspace-wallpapers": ("GPL-2+ / LGPL (per wallpaper)", [
        f"usr/share/wallpapers/{n}/contents/images/1920x1080.jpg" for n in (
            "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path",
            "summer_1am")] + ["usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg"]),
    "lxqt-themes": ("LGPL-2.1+ / CC-BY-SA (per file)", [
        f"usr/share/lxqt/wallpapers/{n}" for n in (
            "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
            "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")]),
    "palapeli-data": ("GPL-2+ (photos: CC-BY-SA / public domain, per file)", [
        f"usr/share/palapeli/collection/{n}.jpg" for n in (
            "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee",
            "panther-chameleon-female")]),
    "tuxpaint-data": ("GPL-2+", [
        f"usr/share/tuxpaint/templates/{n}.jpg" for n in (
            "burnt_bark", "cliff", "corn_maze", "jellyfish", "lighthouse", "mossy_bark", "mossy_log", "mudstone",
            "ocean_splash", "ocean_waves", "redwoods_above", "rocks", "sheep", "spiders_web", "sun_behind_clouds",
            "sun_behind_leaves", "trees_above", "trees_at_dusk", "wool_mill_machine")]),
    # Animals, monuments, landscapes, underwater and music scenes; its drawings and paintings are left out.
    "gcompris-qt-data": ("CC-BY / CC-BY-SA 2.0-4.0 / public domain (per file)", _gcompris("erase", """
        alpaca bee butterfly calf camels caterpillar chamaeleon cheetah crab dolphin flying_fox gibbon giraffe goat
        gorilla gosling heron horse kingfisher kitten long_nosed_monkey macaque meerkats northern_harrier nubian_ibex
        penguin pika red_panda rhinoceros spoonbills squirrel swans toucan""") + _gcompris("explore_monuments", """
        egypt/bentPyramid egypt/greatPyramidOfGiza egypt/meidumPyramid france/arlesAmphitheater
        france/chateaudeChambord france/chateaudeChenonceau france/citedeCarcassonne france/eiffelTower
        france/montStMichel france/palaisdesPapes france/pontduGard france/reimsCathedral france/rocamadour
        germany/aulaPalatina germany/berlinCathedral germany/brandenburgGate germany/neuschwansteinCastle
        germany/schwerinPalace germany/trierImperialBaths germany/wormsCathedral india/ajantaCave india/charminar
        india/gatewayofIndia india/goldenTemple india/greatStupa india/hawaMahal india/konarkSunTemple
        india/mysorePalace india/qutubMinar india/rangGhar usa/canyondeChelly usa/castillodeSanMarcos
        usa/castleClinton usa/fortSumter usa/georgeWashingtonBirthplace usa/lincolnMemorial usa/mountRushmore
        usa/navajo usa/statueofLiberty wonders/chichenItza wonders/christTheRedeemer wonders/colosseum
        wonders/greatWallofChina wonders/machuPicchu wonders/petra wonders/tajMahal""") + _gcompris(
        "explore_world_animals", """animals/bison animals/chameleon animals/crocodile animals/dragon animals/giraffe
        animals/hedgehog animals/jaguar animals/kangaroo animals/koala animals/lemur animals/moose animals/narwhal
        animals/panda animals/polar_bear""") + _gcompris(
        "explore_farm_animals", "animals/chicken animals/cow animals/dog animals/horse animals/pig animals/sheep")
        # details' Chenonceau, Giza, Neuschwanstein and Taj Mahal repeat explore_monuments' views: left out, so a
        # scene never lands in both splits
        + _gcompris("details", """image/EgeskovSlotSpejling_background image/EilanDonanCastle_background
        image/FanoeWindmill_background image/Louvre_2007_02_24_c_background image/NDP_background
        image/Nagoya_background image/OperaSidney_background image/TowerBridgeLondon_background""")
        + _gcompris("clickgame", "sea1 sea2 sea3 sea4 sea5 sea6")
        + _gcompris("explore_world_music", """music/africa music/america music/australia music/japan music/mexico
        music/orchestra""")),
}


def _unpacked(package: str, cache: Path, download: bool) -> Path:
    """The root holding the package's files: / where it is installed, else its unpacked copy in the cache."""
    first = PACKAGES[package][1][0].split(MEMBER)[0]
    if (Path("/") / first).is_file():
        return Path("/")
    root = cache / "root" / package
    if (root / first).is_file():
        return root
    if not download:
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        log.warning("%s: apt-get and dpkg are needed to fetch it; skipped", package)
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if got.returncode != 0 or not found:
        why = (got.stderr.strip().splitlines() or ["?"])[-1]
        log.warning("%s: apt-get download failed (%s); skipped", package, why)
        return root
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(found[-1]), str(root)], check=True, capture_output=True)
    return root


def _copied_out(root: Path, name: str, extracted: Path, archives: Dict[Path, Dict[str, bytes]]) -> Path:
    """The file itself, or for ``archive.rcc::inner/path`` its copy under ``extracted`` (made once)."""
    if MEMBER not in name:
        return root / name
    archive, inner = name.split(MEMBER)
    dest = extracted / inner
    if not dest.is_file() and (root / archive).is_file():
        if root / archive not in archives:
            try:
                archives[root / archive] = read_rcc(root / archive)
            except ResourceError as exc:   # warned once, like a failed download: the other packages still count
                fix = "reinstall its package" if root == Path("/") else f"delete {root} to fetch it again"
                log.warning("%s; its photos are skipped (%s)", exc, fix)
                archives[root / archive] = {}
        payload = archives[root / archive].get(inner)
        if payload is not None:
            with atomic_path(dest) as tmp:
                tmp.write_bytes(payload)
    return dest


def debian_photos(cache: Path, download: bool = True) -> List[Source]:
    """Every curated photo of PACKAGES available here (installed, cached, or fetched when ``download``)."""
    out, cache = [], Path(cache)
    for package, (license_, files) in PACKAGES.items():
        root = _unpacked(package, cache, download)
        archives: Dict[Path, Dict[str, bytes]] = {}
        copies = (_copied_out(root, f, cache / "extracted" / package, archives) for f in files)
        present = [p for p in copies if p.is_file()]
        out += [Source(p, package, license_) for p in present]
        if present and len(present) < len(files):
            log.warning("%s: %d of %d photos found", package, len(present), len(files))
    return out
