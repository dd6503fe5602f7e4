"""Models: the GPT family of the challenge's records, built from typed keyword arguments."""
