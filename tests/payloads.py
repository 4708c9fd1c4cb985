"""A transcript full of HTML, script and Markdown payloads, shared by the app tests: it must
be shown as text, and nothing in it may run."""

HOSTILE_NAME = "hostile-payloads.txt"
HOSTILE = """\
---
title: 'Hostile <img src=x onerror="window.__pwned=1"> ![t](http://example.invalid/t.png)'
date: 2024-01-02
speakers:
  Q:
    name: Quinn
    role: interviewer
  EVE:
    name: Eve <b>Mallory</b>
    role: interviewee
    description: '<script>window.__pwned=1</script> tester'
---
Q: What is in the payload file?
EVE: Here it is <script>window.__pwned=1</script> and an image <img src=x onerror="window.__pwned=1"> and markdown ![x](http://example.invalid/x.png) and a [link](javascript:window.__pwned=1) too. The payload is stored safely in this file.
Q: Anything else about the payload?
EVE: Nothing else: **bold** _italic_ :red[colour] $x^2$ <b>tag</b> end of the payload list.
"""
