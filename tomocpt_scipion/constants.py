"""Names shared by the Scipion side of the plugin (variables, recipes, peak methods)."""

from .engine.specs import RECIPE_SPECS

#: Scipion variables: the engine environment's activation command (empty: the one
#: `scipion3 installb tomocpt-engine` made, else Scipion's own Python), the Python that
#: installb builds it from, and the pip index of the torch build (CUDA version) it installs.
TOMOCPT_ENV_ACTIVATION = "TOMOCPT_ENV_ACTIVATION"
TOMOCPT_PYTHON = "TOMOCPT_PYTHON"
TOMOCPT_TORCH_INDEX = "TOMOCPT_TORCH_INDEX"
TOMOCPT_ENV_PACKAGE = "tomocpt-engine"
ENGINE_MODULE = "tomocpt_scipion.engine"
ENGINE_TORCH_VERSION = "2.13.0"
#: the oldest Python the engine supports (torch 2.13)
ENGINE_MIN_PYTHON = (3, 10)

#: recipe name -> bibtex key of the paper it reproduces
RECIPE_CITATIONS = {name: spec.citation for name, spec in RECIPE_SPECS.items()}

#: recipe name -> its backbone (fine-tuning must keep the backbone)
RECIPE_BACKBONES = {name: spec.backbone for name, spec in RECIPE_SPECS.items()}

#: box size / particle diameter the diameter wizard assumes (boxes are usually 1.5-2 × the particle)
BOX_TO_DIAMETER = 1.5
