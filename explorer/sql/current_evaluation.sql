-- The evaluation read by default (views.sql: current_evaluation); no row when nothing is evaluated.
select gen_key, settings, sweep, judges, primary_judge, recipe from current_evaluation
