# SPDX-License-Identifier: GPL-2.0
#
# Sphinx configuration for rslab's documentation (make htmldocs). Like the
# kernel's Documentation/, plain reStructuredText with no extension beyond
# Sphinx itself; warnings are errors (sphinx-build -W).

project = 'rslab'
copyright = 'The rslab authors'
master_doc = 'index'
exclude_patterns = ['output']
highlight_language = 'none'
html_theme = 'alabaster'
html_show_sourcelink = False
