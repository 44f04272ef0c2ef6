"""Dashboard glue shared by app.py and the pages, one purpose a module, each importing only those
before it (data ← selection ← layout ← models; tables and jobs beside them), never the other way:

- data: where the stores are, every cached read of them, and the dashboard's two writes;
- selection: what the sidebar and the pages chose (judge, prompt set, family, operating point, baseline);
- tables: pure DataFrame views the pages show (no Streamlit, no store);
- layout: shared bits of page layout: charts, pickers, captions, sliders, the words that explain each number;
- models: the live page's models: checkpoints on disk, the cached engine and judges, the in-between model;
- jobs: background evaluations started from a page, and their progress.

Pages import the modules (`from explorer.ui import data, layout`), not names from them, so a test can
monkeypatch a module's attribute (layout.SHOWN_FLIPS, models.engine). This file imports nothing.
"""
