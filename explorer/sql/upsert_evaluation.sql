-- Record an evaluation's settings. A rerun with $replace updates sweep, judges and recipe; an imported
-- suite's run ($replace false) only adds the row if it is missing, so importing never changes what the
-- shipped figures are read with.
insert into evaluations (gen_key, settings, sweep, judges, primary_judge, recipe)
values ($gen_key, $settings, $sweep, $judges, $primary_judge, $recipe)
on conflict (gen_key) do update
    set settings = excluded.settings, sweep = excluded.sweep, judges = excluded.judges,
        primary_judge = excluded.primary_judge, recipe = excluded.recipe, registered_at = now()
    where $replace
