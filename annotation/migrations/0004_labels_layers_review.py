"""Label sets and labels, overlapping layers, review workflow, assignments and active-learning scores."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0003_segmentation_versions'),
        ('portal', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='segmentation',
            name='layer_group',
            field=models.UUIDField(blank=True, db_index=True, help_text='Segmentations that are layers of one overlapping label set share this id.', null=True),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='layer_index',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='segmentation',
            name='review_status',
            field=models.CharField(choices=[('draft', 'Draft'), ('submitted', 'Submitted'), ('approved', 'Approved'), ('rejected', 'Rejected')], default='draft', max_length=16, verbose_name='review status'),
        ),
        migrations.CreateModel(
            name='LabelSet',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('project', models.CharField(blank=True, max_length=100, verbose_name='project')),
                ('name', models.CharField(max_length=100, verbose_name='name')),
                ('description', models.TextField(blank=True, verbose_name='description')),
                ('allow_overlap', models.BooleanField(default=False, verbose_name='overlapping segments allowed')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('hospital', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='label_sets', to='portal.hospital')),
            ],
            options={
                'verbose_name': 'label set',
                'verbose_name_plural': 'label sets',
                'ordering': ['hospital', 'project', 'name'],
            },
        ),
        migrations.CreateModel(
            name='Label',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveIntegerField(help_text='Voxel value in the label map (1–65535).', verbose_name='value')),
                ('name', models.CharField(max_length=100, verbose_name='name')),
                ('color', models.CharField(default='#ff0000', max_length=7, verbose_name='colour')),
                ('description', models.TextField(blank=True, verbose_name='description')),
                ('snomed_code', models.CharField(blank=True, max_length=20, verbose_name='SNOMED CT code')),
                ('snomed_meaning', models.CharField(blank=True, max_length=100)),
                ('label_set', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='labels', to='annotation.labelset')),
            ],
            options={
                'verbose_name': 'label',
                'verbose_name_plural': 'labels',
                'ordering': ['label_set', 'index'],
            },
        ),
        migrations.AddField(
            model_name='segmentation',
            name='label_set',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='segmentations', to='annotation.labelset'),
        ),
        migrations.CreateModel(
            name='ReviewComment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('decision', models.CharField(choices=[('comment', 'Comment'), ('submit', 'Submitted for review'), ('approve', 'Approved'), ('reject', 'Rejected')], default='comment', max_length=16)),
                ('text', models.TextField(blank=True, max_length=4000)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('author', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('segmentation', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='review_comments', to='annotation.segmentation')),
                ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='review_comments', to='annotation.study')),
            ],
            options={
                'ordering': ['created_at'],
            },
        ),
        migrations.CreateModel(
            name='StudyAssignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('assigned', 'Assigned'), ('submitted', 'Submitted'), ('done', 'Done')], default='assigned', max_length=16)),
                ('review_only', models.BooleanField(default=False, help_text='Label by hand; no model is run.', verbose_name='review only')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('annotator', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='study_assignments', to=settings.AUTH_USER_MODEL)),
                ('assigned_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='annotation.study')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='UncertaintyScore',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('method', models.CharField(choices=[('entropy', 'Mean voxel entropy'), ('mc_dropout', 'Monte-Carlo dropout variance')], max_length=16)),
                ('score', models.FloatField()),
                ('details', models.JSONField(blank=True, default=dict)),
                ('computed_at', models.DateTimeField(auto_now=True)),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='uncertainty_scores', to='annotation.segmentationmodel')),
                ('series', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='uncertainty_scores', to='annotation.series')),
            ],
            options={
                'ordering': ['-score'],
            },
        ),
        migrations.AddConstraint(
            model_name='labelset',
            constraint=models.UniqueConstraint(fields=('hospital', 'project', 'name'), name='label_set_unique_name'),
        ),
        migrations.AddConstraint(
            model_name='label',
            constraint=models.UniqueConstraint(fields=('label_set', 'index'), name='label_unique_index'),
        ),
        migrations.AddConstraint(
            model_name='label',
            constraint=models.CheckConstraint(condition=models.Q(('index__gte', 1), ('index__lte', 65535)), name='label_index_range'),
        ),
        migrations.AddConstraint(
            model_name='studyassignment',
            constraint=models.UniqueConstraint(fields=('study', 'annotator'), name='assignment_unique_annotator'),
        ),
        migrations.AddConstraint(
            model_name='uncertaintyscore',
            constraint=models.UniqueConstraint(fields=('series', 'model', 'method'), name='uncertainty_unique'),
        ),
    ]
