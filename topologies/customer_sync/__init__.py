"""Customer sync: one golden customer per person across Pardot, Salesforce and TIMS.

Pure parts (identity, cleansing, mapping, merge) live in plain modules beside the Faust agents
(``agents.py``), which stay thin around them.
"""
