"""Version trees of segmentations: root, current version, comment, tool and parameters."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def link_trees(apps, schema_editor):
    """Give existing rows their tree root; the newest version of each tree is the current one."""
    Segmentation = apps.get_model("annotation", "Segmentation")
    rows = {s.pk: s for s in Segmentation.objects.order_by("pk")}
    for row in rows.values():
        root = row
        while root.parent_id is not None and root.parent_id in rows:
            root = rows[root.parent_id]
        row.root_id = root.pk
    newest = {}
    for row in rows.values():
        if row.root_id not in newest or (row.created_at, row.pk) > (newest[row.root_id].created_at, newest[row.root_id].pk):
            newest[row.root_id] = row
    for row in rows.values():
        row.is_current = newest[row.root_id].pk == row.pk
        row.save(update_fields=["root", "is_current"])


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0002_builtin_lung_model'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='segmentation',
            name='comment',
            field=models.TextField(blank=True, max_length=2000, verbose_name='comment'),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='is_current',
            field=models.BooleanField(default=True, help_text='The version of its tree the study page shows.'),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='parameters',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='root',
            field=models.ForeignKey(blank=True, help_text='The first version of this version tree (itself for a first version).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='tree', to='annotation.segmentation'),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='tool',
            field=models.CharField(blank=True, help_text='Editing tool, refinement or import that made this version.', max_length=64),
        ),
        migrations.RunPython(link_trees, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='segmentation',
            constraint=models.UniqueConstraint(condition=models.Q(('is_current', True)), fields=('root',), name='segmentation_one_current_per_tree'),
        ),
    ]
