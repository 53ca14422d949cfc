"""The options of %%tfgrad and %%descend, in one home.

declared.py declares each option once (flags, type, default, help, group, %config setting);
exclusions.py says what excludes what; help.py makes the magic_arguments decorators and the
man page of `%%descend?`; settings.py the %config traits; line.py parses a line ("did you
mean"); descend.py and tfgrad.py make the frozen options object a run reads, with data.py,
schedule.py, strategy.py and targets.py for what the line names in the namespace.
"""
