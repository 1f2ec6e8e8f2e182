"""The airlock: what may leave a project, checked for disclosure and reviewed.

``sdc`` holds the disclosure checks (pure pandas: the researcher's library runs them
inside jobs too).
"""
