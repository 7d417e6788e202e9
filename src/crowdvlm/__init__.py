"""crowdvlm: teach vision-language models to count, with GRPO and the fuzzy FGRPR reward."""

__version__ = "0.1.0"
