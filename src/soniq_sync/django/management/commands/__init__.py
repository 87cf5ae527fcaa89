"""``python manage.py soniq_setup``."""
