"""The portal's web side: the aiohttp app (`app.create_app`), auth, JSON API, pages, staff, downloads."""
