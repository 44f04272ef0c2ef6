insert or replace into judge_metrics (judge, judge_version, dataset, n_labels, agreement, kappa, confusion)
select judge, judge_version, dataset, n_labels, agreement, kappa, confusion from new_metrics
