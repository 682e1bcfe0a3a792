"""mammocli: the NYU breast-cancer screening model (Wu et al. 2019) as a command-line tool.

Research software. Not a medical device; not for clinical decisions.
"""

__version__ = "0.1.0"
