"""Installation of the tomocpt_scipion Scipion plugin and its bundled picking engine."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
ENGINE_REQUIREMENTS = HERE / "tomocpt_scipion" / "engine" / "requirements.txt"
#: what the plugin side imports besides Scipion: the engine's file formats and the pick browser
PLUGIN_REQUIRES = ["numpy", "scipy", "pandas", "mrcfile", "starfile>=0.5", "imodmodel>=0.1", "matplotlib"]
ENGINE_REQUIRES = [
    line.strip() for line in ENGINE_REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")
]

setup(
    name="scipion-em-tomocpt",
    version="0.1.0",
    description="Deep-learning particle picking in cryo-ET tomograms (tomoCPT, DeepETPicker, "
    "TomoPicker recipes) as a Scipion plugin and a standalone CLI",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    include_package_data=True,
    package_data={
        "tomocpt_scipion": [
            "protocols.conf",
            "icon.png",
            "engine/requirements.txt",
            "engine/templates/*.mrc",
            "engine/templates/*.md",
        ]
    },
    # The plugin side (forms, conversion, viewers) needs no torch: the engine runs in its own
    # environment (`scipion3 installb tomocpt-engine`), or in this one with the [engine] extra.
    install_requires=[
        "scipion-app>=3.8",
        "scipion-pyworkflow>=3.6",
        "scipion-em>=3.6",
        "scipion-em-tomo>=3.6",
        *PLUGIN_REQUIRES,
    ],
    extras_require={"engine": ENGINE_REQUIRES, "test": ["pytest>=7", "scipion-em-reliontomo", "scipion-em-dynamo"]},
    entry_points={
        "pyworkflow.plugin": ["tomocpt_scipion = tomocpt_scipion"],
        "console_scripts": ["tomocpt-engine = tomocpt_scipion.engine.cli:main"],
    },
)
