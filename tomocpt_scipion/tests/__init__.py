"""Scipion tests of the plugin (found by `scipion3 tests tomocpt_scipion`; pytest collects them too)."""
