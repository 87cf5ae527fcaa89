"""Import paths the documentation uses for Soniq's building blocks."""
