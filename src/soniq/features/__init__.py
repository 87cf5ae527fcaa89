"""Import paths of the original Soniq's feature modules, kept for code written against
it. New code imports from the packages these re-export."""
