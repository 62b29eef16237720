"""The web dashboard at /ui: sessions, the live feed, pages and their assets."""
