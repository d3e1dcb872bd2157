"""Render 3D assets into view pairs (a view and the view turned about the vertical axis) and write them as shards."""
