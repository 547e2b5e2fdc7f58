"""Names shared by the Scipion side of the plugin (variables, recipes, peak methods)."""

from .engine.specs import RECIPE_SPECS

TOMOCPT_ENV_ACTIVATION = "TOMOCPT_ENV_ACTIVATION"
TOMOCPT_ENV_NAME = "tomocpt-engine-0.1.0"
ENGINE_MODULE = "tomocpt_scipion.engine"
ENGINE_TORCH_VERSION = "2.13.0"

#: recipe name -> bibtex key of the paper it reproduces
RECIPE_CITATIONS = {name: spec.citation for name, spec in RECIPE_SPECS.items()}

#: recipe name -> its backbone (fine-tuning must keep the backbone)
RECIPE_BACKBONES = {name: spec.backbone for name, spec in RECIPE_SPECS.items()}

#: box size / particle diameter the diameter wizard assumes (boxes are usually 1.5-2 × the particle)
BOX_TO_DIAMETER = 1.5
