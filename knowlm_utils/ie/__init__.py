"""Information extraction data (stage 06 and later): the :class:`~.annotation.Annotation` data
model, converters from standard IE formats, and a formatter + parser for every output format the
instructions use (what the evaluation and the playground parse model outputs with).

Modules: ``annotation`` (the data model), ``formats`` (output formats: write and parse),
``converters`` (CoNLL-2003, People's Daily, DuIE, DuEE, IEPile → annotations),
``linking`` (gazetteer automaton, pluggable mention detectors, entity linking with disambiguation).
"""
