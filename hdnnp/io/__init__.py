"""Readers and writers of trajectory and energy files."""
