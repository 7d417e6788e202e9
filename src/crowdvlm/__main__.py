"""`python -m crowdvlm ...` is the same as the `crowdvlm` console script."""

from crowdvlm.cli import run

if __name__ == "__main__":
    run()
