"""Symbolic melodies: the note representation, scores read from the music21 corpus, similarity."""
