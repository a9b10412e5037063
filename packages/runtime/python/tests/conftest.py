import os
import sys

# The client is imported from this folder (the way a site's PYTHONPATH provides it), not from an install.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
