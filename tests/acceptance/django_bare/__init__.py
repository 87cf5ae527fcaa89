"""A Django project in one file, configured by ``settings.configure()``; see views.py."""
