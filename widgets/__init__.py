"""tfmagic.widgets: the live ipywidgets + bqplot UI for %%descend and %%tfgrad."""
