"""The one argparse help formatter of every command and training script."""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default and keeps descriptions' own line breaks."""
